"""DSSM-family two-tower models for rechub: DSSM, FaceBookDSSM, YoutubeDNN, YoutubeSBC."""

from rechub_plugins_dssm.dssm import DSSM
from rechub_plugins_dssm.facebook_dssm import FaceBookDSSM
from rechub_plugins_dssm.youtube_dnn import YoutubeDNN
from rechub_plugins_dssm.youtube_sbc import YoutubeSBC

__all__ = ["DSSM", "FaceBookDSSM", "YoutubeDNN", "YoutubeSBC"]
