"""Evaluation: embeddings, probes, metrics with bootstrap CIs, and reports.

- :mod:`~fmct.evaluate.embed` — ``embed_store`` (resumable, batched) / ``load_embeddings``.
- :mod:`~fmct.evaluate.splits` — patient-level splits, ``assert_patient_disjoint``, label fractions.
- :mod:`~fmct.evaluate.probe` / ``knn`` / ``attentive`` — probes fitted on train, selected on val.
- :mod:`~fmct.evaluate.metrics`, ``bootstrap``, ``calibration`` — AUROC/AP, CIs, paired differences, ECE.
- :mod:`~fmct.evaluate.protocol` — ``run_protocol`` (the whole protocol) and ``report`` / ``plots``.
- :mod:`~fmct.evaluate.crossfit` — the protocol's probes cross-fitted over patient folds of one labelled set.

Fine-tuning is training (:mod:`fmct.train.finetune`); labels files are read by :mod:`fmct.labels.table`.

Calling the package, ``fmct.evaluate(models, labels, data, out, ...)``, runs :func:`fmct.api.evaluation.evaluate`.
"""


class _CallablePackage(__import__("types").ModuleType):
    """Lets users write ``fmct.evaluate(models, labels, data, out, ...)`` (:func:`fmct.api.evaluation.evaluate`)
    while ``fmct.evaluate`` stays the package that holds ``embed``, ``metrics``, ``protocol`` …"""

    def __call__(self, *args, **kwargs):
        from fmct.api.evaluation import evaluate

        return evaluate(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallablePackage
