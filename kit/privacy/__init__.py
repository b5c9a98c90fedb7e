"""Privacy: finding and replacing personal data, and proving afterwards that none got through.

- `kit.privacy.redact`: the redaction engines (patterns with checksums, known values, the NER ensemble, no-cue names);
- `kit.privacy.ner` with `ner_model/` and `ner_model_2/` (two shipped spaCy pipelines) and `kit.privacy.gazetteer`
  (census names): the entity recogniser the redactor and the audit use;
- `kit.privacy.audit`: the independent second pass over the written files (it never imports `redact`);
- `kit.privacy.canaries`: fake secrets planted before redaction; `kit.privacy.probes`: whether the tuned model gives
  them (or other personal data) back.
Nothing is imported here, so the audit stays independent of the redactor.
"""
