"""``tts-otel report --html FILE``: one self-contained HTML page of charts, readable offline.

The page holds the source article's three charts (latency over time by
configuration; peak GPU memory against audio duration; latency by text length
bin), each stage's latency over time, the slowest requests as waterfalls and,
when given, an A/B comparison. plotly draws them; its JavaScript is inlined
once, so the file opens with no network (install the ``html`` extra). Charts are
SVG, not WebGL: a browser without a GPU (or WebGL turned off) draws them too.

One module per job: :mod:`._aggregate` reads the requests (each a ``tts.synthesize``
span and its subtree, as the read side assembles them) once into what the charts need, in
bounded memory; :mod:`._charts` draws each chart;
:mod:`._page` lays the charts and tables out as the page; :mod:`._plotly`
imports plotly only when a page is drawn, so importing this package costs
nothing when the extra is absent.
"""

from tts_otel.read.html._page import write_html
from tts_otel.read.html._plotly import MissingExtraError

__all__ = ["MissingExtraError", "write_html"]
