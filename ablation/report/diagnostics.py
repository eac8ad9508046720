"""What tells a fair comparison from an artefact of how the arms were trained:
the protocol line every report opens with, and the diagnostics rows of the
fairness section (still improving, optimizer steps, identical arms, tuning
budget, generalisation gap)."""

from __future__ import annotations

from ablation.report.load import StudyInfo


def protocol_line(info: StudyInfo) -> str:
    """One sentence: how every arm was trained before it was compared."""
    s = info.protocol_settings
    cap, patience = s.get("max_epochs"), s.get("patience")
    frac = s.get("select_fraction", 1.0)
    picked = ("the best epoch picked on the whole val split" if frac is None or frac >= 1.0 else
              f"the best epoch picked on a fixed {frac:.0%} of the val utterances (the same for every arm), "
              "its metrics reported on the whole val split")
    if info.protocol == "converged":
        return (f"**Protocol:** converged: every cell trains until val stops improving for {patience} "
                f"epoch(s), at most {cap} epochs; {picked}, its weights restored and evaluated.")
    if info.protocol == "tuned":
        t = s.get("tuning", {})
        space = ", ".join(f"`{k}`" for k in t.get("space", {})) or "n/a"
        stop = (f"each run early-stopped (patience {patience}, at most {cap} epochs)" if patience
                else f"each run {cap} epochs")
        return (f"**Protocol:** tuned: every arm got {t.get('trials', '?')} TPE trials over {space} on tuning "
                f"seeds {', '.join(map(str, t.get('seeds', [])))} (pruner: {t.get('pruner', 'none')}); its best "
                f"values were then run on the study's seeds, and only those confirmation runs make the verdict; "
                f"{stop}, {picked}.")
    return (f"**Protocol:** fixed: every arm trains {cap if cap else 'the same number of'} epochs at the same "
            f"settings; {picked}.")
