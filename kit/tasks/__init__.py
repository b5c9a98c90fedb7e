"""Task kinds (classify, extract, reply): what a row's answer is, how a record becomes a prompt, and how answers are
scored and beaten.

- `kit.tasks.base`: the `Task` every stage builds prompts with, kinds and their instructions, answer parsing;
- `kit.tasks.metrics`: metrics per kind (accuracy/F1 and escalation errors; JSON field accuracy; ROUGE-L and chrF);
- `kit.tasks.baselines`: the cheap models the tuned one must beat (majority class, TF-IDF, few-shot prompts).

The kinds share one `Task` class (branching on `kind`) rather than one module each: the code was written that way and
this package only gives it a home.
"""
