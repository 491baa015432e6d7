"""How much a run's poses still change from epoch to epoch, as RELION reports "changes in
optimal orientations / offsets / classes" per iteration: per epoch, the median geodesic angle
(degrees) and shift (px) between each particle's poses after it and after the epoch before,
and while the images are classified, the fraction that changed class.

While an ab initio search is finding the poses the changes are large (tens of degrees); once it
has found them they fall to the search's noise (a few degrees at SNR 0.1), and the refinement
moves them by less. Settled poses are not proof of correct ones (a search can settle on a
wrong map), but poses that still jump after the search mean the search has not converged.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cryoscape.core.poses import rotation_angles_deg

# median change (deg) in the last search epoch beyond which the search has not settled
# (a settled search at SNR 0.1 moves the median image by a few degrees; see pose_change_advice)
UNSETTLED_DEG = 15.0


def pose_changes(rot_a, shift_a, rot_b, shift_b, ref_a=None, ref_b=None) -> dict:
    """Median change from poses a to poses b (rotations [N, 3, 3], shifts [N, 2] px):
    `pose_change_deg`, `shift_change_px`, and with classes of both, `class_change` (the
    fraction of images in another class)."""
    shift = np.linalg.norm(np.asarray(shift_b, np.float64) - np.asarray(shift_a, np.float64),
                           axis=1)
    out = {"pose_change_deg": float(np.median(rotation_angles_deg(rot_a, rot_b))),
           "shift_change_px": float(np.median(shift))}
    if ref_a is not None and ref_b is not None:
        out["class_change"] = float(np.mean(np.asarray(ref_a) != np.asarray(ref_b)))
    return out


def phase_text(row: dict) -> str:
    """An ab initio epoch's metrics.jsonl row in words: 'search (15.4 ms/image; poses moved
    4.1 deg, 0.42 px, 3% to another class)'."""
    notes = []
    if isinstance(row.get("search_ms_per_image"), (int, float)):
        notes.append(f"{row['search_ms_per_image']:.1f} ms/image")
    if isinstance(row.get("pose_change_deg"), (int, float)):
        moved = f"poses moved {row['pose_change_deg']:.2g} deg, {row['shift_change_px']:.2g} px"
        if isinstance(row.get("class_change"), (int, float)):
            moved += f", {100 * row['class_change']:.0f}% to another class"
        notes.append(moved)
    return str(row["poses"]) + (f" ({'; '.join(notes)})" if notes else "")


def pose_change_advice(change_deg: float, classes: int) -> str | None:
    """A warning where the poses still changed by a median `change_deg` in the last search
    epoch (None where they settled)."""
    if not change_deg > UNSETTLED_DEG:
        return None
    more = " or --search-classes 1" if classes > 1 else ""
    return (f"the pose search has not settled: in its last epoch the poses changed by a median "
            f"{change_deg:.0f} deg (settled: a few deg); the refinement starts from poses that "
            f"may be wrong. Try more --search-epochs, another --seed{more}, or more particles")


def run_pose_changes(run) -> list[dict]:
    """Per epoch of a run's pose files (cryoscape's or cryoDRGN's ab initio pose.N.pkl) after
    the first: {"epoch", "pose_change_deg", "shift_change_px"} from the epoch before."""
    epochs = sorted(e for e in run.pose_files() if e is not None)
    rows, last = [], None
    for e in epochs:
        poses = run.poses(e)
        if last is not None:
            rows.append({"epoch": e, **pose_changes(*last, *poses)})
        last = poses
    return rows


def plot_pose_changes(path: str | os.PathLike, rows: list[dict], phases: dict | None = None
                      ) -> Path:
    """PNG: the median pose change (deg, log scale) and shift change (px) per epoch, with the
    epochs' pose phases (`phases`: {epoch: "pretrain" | "search" | "refine"}) where known (the
    changes from and within the pretraining's random poses left out)."""
    from cryoscape.core.analysis.plots import _figure, _save

    phases = phases or {}
    pretrain = {e for e, phase in phases.items() if phase == "pretrain"}
    rows = [r for r in rows if not {r["epoch"], r["epoch"] - 1} & pretrain]   # random poses
    ep = np.array([r["epoch"] for r in rows])
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.semilogy(ep, [max(r["pose_change_deg"], 1e-3) for r in rows], "o-", color="C0",
                label="rotation (deg)")
    ax.semilogy(ep, [max(r["shift_change_px"], 1e-3) for r in rows], "s--", color="C1",
                label="shift (px)")
    ax.axhline(UNSETTLED_DEG, color="0.6", lw=0.8, ls=":", label="not settled above")
    refine = sorted(e for e, phase in phases.items() if phase == "refine")
    if refine:
        ax.axvline(refine[0] - 0.5, color="0.3", lw=0.8)
        ax.text(refine[0] - 0.4, ax.get_ylim()[1], " refinement", va="top", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("median change from the epoch before")
    ax.set_title("how much the poses still change")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)
