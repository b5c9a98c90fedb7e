"""The course's stages, one module per notebook, each with a frozen config dataclass and `run(cfg)`.

`scope` (00), `licenses` (01), `prepare` (02), `train` (03), `evaluate` (04), `export` (05), `monitor` (06). A stage
module holds its config, its checks and the order of its work; what a stage shares with others lives in the packages
beside this one (tasks, models, privacy, scoring, report) or in `kit.rundir` / `kit.io`. Nothing is imported here:
`from kit.stages import train` loads only what training needs.
"""
