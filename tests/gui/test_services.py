"""The explorer's services work without any widget: a script (or a test) drives them and reads
the models' events; each service's threads end with `shutdown()`."""
from __future__ import annotations

import numpy as np

from tests.gui.conftest import WAIT_MS, SyntheticRun


def test_services_without_widgets(qtbot, qapp, tmp_path, no_leaks):
    from cryoscape.app.gui.services.explorer import Explorer

    ex = Explorer()
    st, shown = ex.state, ex.volumes.shown
    meshes, busy = [], []
    shown.mesh_changed.connect(meshes.append)
    ex.activity.busy_changed.connect(lambda on, what: busy.append(what) if on else None)
    try:
        run = SyntheticRun(tmp_path / "r", n=200)
        ex.runs.set_run(run)
        qtbot.waitUntil(lambda: st.labels is not None, timeout=WAIT_MS)
        assert st.embedding.shape == (200, 2) and len(np.unique(st.labels)) == 20
        assert "Embedding and clustering" in busy
        ex.volumes.decode_particle(3)
        qtbot.waitUntil(lambda: bool(meshes) and meshes[-1].volume.source == "exact",
                        timeout=WAIT_MS)
        vol, apix = ex.volumes.current_map()
        np.testing.assert_allclose(vol, run.decode(run.latents()[3:4])[0], atol=1e-6)
        assert apix == 2.0 and shown.current_mesh is meshes[-1].mesh
        level = meshes[-1].mesh.level
        st.set_threshold(3.5)                           # re-meshed, not decoded again
        qtbot.waitUntil(lambda: meshes[-1].mesh.level != level, timeout=WAIT_MS)
        assert meshes[-1].volume is shown.current and meshes[-1].mesh.level > level
        st.set_waypoints([0, 1])
        ex.trajectories.compute_path(n=5)
        qtbot.waitUntil(lambda: len(shown.path_volumes) == 5, timeout=WAIT_MS)
        assert st.path_z.shape == (5, 2)
    finally:
        ex.shutdown()
    assert ex.threads and all(t.isFinished() for t in ex.threads)
