"""Pose changes between epochs (RELION's 'changes in optimal orientations / offsets /
classes'): angles, medians, the words in the log and the warning."""
import numpy as np
import pytest
from cryoscape.core.analysis.posechanges import (
    UNSETTLED_DEG,
    phase_text,
    pose_change_advice,
    pose_changes,
)
from cryoscape.core.poses import rotation_angles_deg
from scipy.spatial.transform import Rotation


def test_rotation_angles_exact_from_tiny_to_half_turn():
    R = Rotation.random(5, random_state=0)
    for deg in (1e-3, 0.5, 10.0, 90.0, 179.9):
        turn = Rotation.from_rotvec(np.radians(deg) * np.array([[0.6, 0.0, 0.8]]))
        got = rotation_angles_deg(R.as_matrix(), (R * turn).as_matrix())
        np.testing.assert_allclose(got, deg, rtol=1e-6, atol=1e-7)


def test_pose_changes_are_medians_and_class_fraction():
    n = 101
    R = Rotation.random(n, random_state=1)
    deg = np.linspace(0.0, 20.0, n)                 # image i turned by deg[i] about its own x
    turned = R * Rotation.from_rotvec(np.radians(deg)[:, None] * np.array([1.0, 0, 0]))
    shift_a = np.zeros((n, 2))
    shift_b = np.column_stack([np.linspace(0, 4, n), np.zeros(n)])
    ref_a, ref_b = np.zeros(n, int), np.r_[np.ones(26, int), np.zeros(n - 26, int)]
    c = pose_changes(R.as_matrix(), shift_a, turned.as_matrix(), shift_b, ref_a, ref_b)
    assert c["pose_change_deg"] == pytest.approx(10.0, abs=1e-5)
    assert c["shift_change_px"] == pytest.approx(2.0)
    assert c["class_change"] == pytest.approx(26 / n)
    assert "class_change" not in pose_changes(R.as_matrix(), shift_a, R.as_matrix(), shift_a)


def test_phase_text_and_the_unsettled_warning():
    row = {"poses": "search", "search_ms_per_image": 15.43, "pose_change_deg": 4.123,
           "shift_change_px": 0.4167, "class_change": 0.031}
    assert phase_text(row) == ("search (15.4 ms/image; poses moved 4.1 deg, 0.42 px, "
                               "3% to another class)")
    assert phase_text({"poses": "pretrain"}) == "pretrain"
    assert pose_change_advice(UNSETTLED_DEG / 2, classes=2) is None
    msg = pose_change_advice(40.0, classes=2)
    assert "40 deg" in msg and "--search-epochs" in msg and "--search-classes 1" in msg
    assert "--search-classes" not in pose_change_advice(40.0, classes=1)
