"""The paper's protocol as one command: every method over several seeds, a sweep of b and a
chain of successive updates, written as results.json, a markdown report and a plot.

Per seed: the old model (independent on the old classes), the independent reference on
old + new classes, then each method through `mpt.update.run_update`, whose reference store
trains the reference and the ELODI ensemble once per seed and reuses them for every method.

Presets: a CIFAR-100 folder gets the paper's setting (resnet18, classes 0-49 -> 0-99, the
Recipe defaults: 100 epochs, batch 128, SGD 0.1, paper normalisation); any other data set
gets a budget that finishes the Fashion-MNIST study on a 2-core CPU in about an hour.
Every preset value is overridden by the matching command-line option.

Modules: `study` (the presets and the resolved Study), `command` (the options and the handler of
`mpt reproduce`), `runs` (one timed update and its record), `protocol` (the order of runs) and
`report` (tables, results.json, results.md and the plot).
"""
