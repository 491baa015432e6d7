"""The explorer's services over one state: what a window (or a script, or a test) drives."""
from __future__ import annotations

from cryoscape.app.gui.models.activity import Activity
from cryoscape.app.gui.models.explorer import ExplorerState
from cryoscape.app.gui.services.embedding import EmbeddingService
from cryoscape.app.gui.services.fit import FitService
from cryoscape.app.gui.services.landscape import LandscapeService
from cryoscape.app.gui.services.poses import PoseService
from cryoscape.app.gui.services.runs import RunService
from cryoscape.app.gui.services.selections import SelectionService
from cryoscape.app.gui.services.training import TrainingService
from cryoscape.app.gui.services.trajectories import TrajectoryService
from cryoscape.app.gui.services.volumes import VolumeService


class Explorer:
    """The models (`state`: what is looked at; `activity`: work under way and messages;
    `volumes.shown`: the maps on screen; `poses.directions`: the viewing directions) and the
    services that update them: `runs`, `embedding`, `volumes`, `poses`, `trajectories`,
    `selections`, `training`, `landscape` (its `model`: states and their maps), `fit` (the
    per-image fit). `parent` (a QObject) owns the services' threads."""

    def __init__(self, parent=None, cache_D: int = 24, n_clusters: int = 20):
        self.state, self.activity = ExplorerState(), Activity()
        st, act = self.state, self.activity
        self.runs = RunService(st, act, parent)
        self.volumes = VolumeService(st, act, parent, cache_D=cache_D)
        self.landscape = LandscapeService(st, act, self.volumes, parent)
        self.fit = FitService(st, act, parent)
        self.embedding = EmbeddingService(st, act, parent, n_clusters=n_clusters,
                                          landscape=self.landscape)
        self.poses = PoseService(st, act, parent)
        self.trajectories = TrajectoryService(st, act, self.volumes, parent)
        self.selections = SelectionService(st, act)
        self.training = TrainingService(st, act, self.runs, self.embedding, self.volumes, parent)
        self._services = (self.runs, self.embedding, self.volumes, self.poses,
                          self.trajectories, self.landscape, self.fit)

    @property
    def threads(self) -> list:
        """Every worker thread of the services."""
        return [t for s in self._services for t in s.threads]

    def shutdown(self) -> None:
        """Stop training (its child process) and every worker thread."""
        self.training.shutdown()
        for s in self._services:
            s.shutdown()
