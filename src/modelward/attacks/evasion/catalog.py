"""Evasion attacks by name, for the command line and checks: one place that maps names to classes."""

from __future__ import annotations

from modelward.attacks.evasion.base import AttackError, EvasionAttack
from modelward.classifiers.base import Classifier

ATTACK_NAMES = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "square", "hopskipjump")


def make_attack(
    name: str, classifier: Classifier, *, norm: str, steps: int = 40, budget: int = 1000, seed: int = 0
) -> EvasionAttack:
    """Build the attack called ``name``; ``steps`` for gradient attacks, ``budget`` (queries) for black-box ones."""
    if name == "fgsm":
        from modelward.attacks.evasion.fgsm import FGSM

        return FGSM(classifier, norm=norm, seed=seed)
    if name == "pgd":
        from modelward.attacks.evasion.pgd import PGD

        return PGD(classifier, norm=norm, steps=steps, seed=seed)
    if name in ("apgd-ce", "apgd-dlr"):
        from modelward.attacks.evasion.apgd import APGD

        return APGD(classifier, norm=norm, loss=name.removeprefix("apgd-"), steps=steps, seed=seed)
    if name == "apgd-t":
        from modelward.attacks.evasion.apgd import APGDT

        return APGDT(classifier, norm=norm, steps=steps, seed=seed)
    if name == "square":
        from modelward.attacks.evasion.square import Square

        return Square(classifier, norm=norm, max_queries=budget, seed=seed)
    if name == "hopskipjump":
        from modelward.attacks.evasion.hopskipjump import HopSkipJump

        return HopSkipJump(classifier, norm=norm, max_queries=budget, seed=seed)
    raise AttackError(f"unknown attack {name!r} (known: {', '.join(ATTACK_NAMES)})")
