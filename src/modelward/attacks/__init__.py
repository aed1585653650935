"""attacks layer of modelward (see DESIGN.md): measure how exposed a model is, one verb per family.

- ``attacks.evasion`` — ``perturb`` (and ``sweep`` over epsilons): inputs changed within an
  epsilon ball so the model misclassifies them (FGSM, PGD, APGD, Square, HopSkipJump), and
  ``evaluate_robustness`` over an AutoAttack-style ensemble.
- ``attacks.inference`` — ``infer``: membership inference, "was this record in the training
  set?" (LOSS, label-only, shadow models, LiRA, RMIA), with reference models trained locally or
  on Ray and the TPR at a low FPR computed exactly.
- ``attacks.extraction`` — ``extract``: a surrogate copied from the model's answers to chosen
  queries (random, natural, knockoff, jacobian), fidelity and accuracy against queries.
- ``attacks.inversion`` — ``invert``: MI-Face class representatives; and ``infer`` on
  ``AttributeInference``: a sensitive column of tabular records, always beside a no-model baseline.

Every attack reaches its target only through the ``Classifier`` protocol (capabilities checked
at construction, queries counted and budgeted); see docs/evasion.md and docs/privacy.md.
"""
