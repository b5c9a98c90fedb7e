"""Command line.

`python -m kit run --config papermill_runs/demo.yaml [--set key=value ...] [--from 03]` runs the course;
`python -m kit train --run-dir papermill_runs/demo [--set key=value ...]` runs stage 03 alone, also as
`accelerate launch -m kit train …` on several GPUs; `python -m kit verify <export dir>` re-checks an export;
`python -m kit chat-template <model> --family chatml` gives a base model without a chat template one, explicitly;
`python -m kit registry <tenant> [--rollback REASON | --erase REASON]` shows or changes a tenant's live adapter;
`python -m kit report <run dir>` rebuilds a run's pilot report (`report.html`).
"""

from __future__ import annotations

import argparse
import sys

from kit.errors import KitError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit", description="Run the fine-tuning course headlessly.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="execute notebooks 00→06 with papermill into papermill_runs/<run_name>/")
    run_p.add_argument("--config", required=True, help="run config YAML, e.g. papermill_runs/demo.yaml")
    run_p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one parameter")
    run_p.add_argument("--from", dest="start", help="resume from a stage (00…06) using the run directory's files")
    run_p.add_argument("--runs-dir", help="where run directories go (default: papermill_runs/)")
    train_p = sub.add_parser("train", help="train an adapter in an existing run directory (stages 01-02 done); "
                                          "works under `accelerate launch -m kit train`")
    train_p.add_argument("--run-dir", required=True, help="run directory with data/ and license_note.json")
    train_p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="a TrainConfig field, e.g. --set max_steps=60 --set quantization=nf4")
    sub.add_parser("params", help="list every notebook parameter with its default and help")
    ver_p = sub.add_parser("verify", help="re-check the sha256 of every file in a run's export/ directory")
    ver_p.add_argument("export_dir", help="e.g. papermill_runs/demo/export")
    tmpl_p = sub.add_parser("chat-template", help="save a chat template beside a model that ships none (base models)")
    tmpl_p.add_argument("model", help="model spec: a checkpoint directory, a .gguf file or an ollama: name")
    tmpl_p.add_argument("--family", default="", help="use this family's kit default template (chatml, gemma)")
    tmpl_p.add_argument("--from-file", default="", help="use this Jinja chat template file")
    reg_p = sub.add_parser("registry", help="a tenant's adapter versions; roll back or erase them")
    reg_p.add_argument("tenant", help="registry entry, e.g. default or acme-insure")
    reg_p.add_argument("--registry-dir", default="papermill_runs/registry", help="default: papermill_runs/registry")
    act = reg_p.add_mutually_exclusive_group()
    act.add_argument("--rollback", metavar="REASON", help="make the version live before the current one live again")
    act.add_argument("--erase", metavar="REASON", help="delete every adapter file of this tenant (recorded)")
    rep_p = sub.add_parser("report", help="rebuild a run's pilot report (report.html) from its files")
    rep_p.add_argument("run_dir", help="e.g. papermill_runs/demo")
    rep_p.add_argument("--out", default="", help="write the page here instead of <run dir>/report.html")
    args = parser.parse_args(argv)

    from kit import runs, settings

    try:
        if args.command == "verify":
            from kit.stages.export import verify

            checked = verify(args.export_dir)
            print(f"verified {len(checked)} files in {args.export_dir}")
            return 0
        if args.command == "chat-template":
            from kit import models

            out = models.choose_chat_template(args.model, args.family, args.from_file)
            print(f"chat template saved to {out} (family: {models.resolve(args.model).chat_format.name})")
            return 0
        if args.command == "report":
            from kit import report

            print(f"pilot report: {report.build(args.run_dir, args.out or None)}")
            return 0
        if args.command == "registry":
            return _registry(args)
        if args.command == "train":
            return _train(args.run_dir, runs.parse_set(args.set))
        if args.command == "params":
            for stage in runs.STAGES:
                print(f"{stage}:")
                for name, p in runs.notebook_parameters(stage).items():
                    print(f"  {name} = {p['default']}  # {p['help']}")
                for name, (default, help_) in settings.advanced_help(runs.stage_config(stage)).items():
                    print(f"  advanced: {name} = {default!r}  # {help_}")
            return 0
        plan = runs.plan(args.config, runs.parse_set(args.set), args.start, args.runs_dir)
        print(f"run '{plan.run_name}' → {plan.run_dir}  stages: {' '.join(plan.stages)}")
        manifest = runs.execute(plan)
        print("\n".join(f"  {k}: {v['wall_s']:.0f} s" for k, v in manifest["notebooks"].items()))
        print(runs.summary(plan.run_dir))
        return 0
    except KitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _registry(args) -> int:
    from kit import adapters

    if args.rollback:
        v = adapters.rollback(args.registry_dir, args.tenant, args.rollback)
        print(f"tenant '{args.tenant}': {v['version']} (run {v['run']}) is live again")
    elif args.erase:
        adapters.erase(args.registry_dir, args.tenant, args.erase)
        print(f"tenant '{args.tenant}': every adapter file erased; no version is live")
    print(adapters.table(args.registry_dir, args.tenant).to_string(index=False))
    return 0


def _train(run_dir: str, overrides: dict) -> int:
    import dataclasses

    from kit import models, settings
    from kit.stages import train

    overrides = settings.flat(overrides, "--set")
    fields = {f.name for f in dataclasses.fields(train.TrainConfig)} - {"run_dir"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise train.TrainError(f"unknown training setting(s) {unknown}; valid: {', '.join(sorted(fields))}.")
    overrides.setdefault("model", models.EMBEDDED_SPEC)
    result = train.run(train.TrainConfig(run_dir=run_dir, **overrides))
    if result.log:  # only the main process of an accelerate launch has a log to print
        log = result.log
        print(f"adapter: {result.adapter_dir}  steps {log['steps']}  {log['wall_s']} s  "
              f"{log['train_tokens_per_s']} tokens/s  validation loss {log['final_validation_loss']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
