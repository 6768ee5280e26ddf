"""Every lesson widget reacts in JupyterLab: moving its slider changes the picture (headless Chromium).

Lessons 01 and 02 have `ipywidgets.interact` sliders (the others have none: `grep -l "widgets\\." notebooks`).
A COPY of each lesson, cut after the widget's cell, is run top to bottom in JupyterLab (started by the
test on 127.0.0.1 with a token, autosave off, every process stopped afterwards); then the slider's handle is
focused and ArrowRight pressed: the plot drawn by the widget must change. Requests off 127.0.0.1 are aborted.
"""
import json
import re

import nbformat
import pytest

from tests.helpers import ROOT
from tests.test_rise import chromium_context, jupyterlab, open_notebook

WIDGET = re.compile(r"\bwidgets\.(interact|FloatSlider|IntSlider)\b")
LESSONS = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
           if WIDGET.search(p.read_text(encoding="utf-8"))]


def widget_copy(lesson, root) -> str:
    """Write the lesson up to (and with) its first widget cell into `root`; return the file name."""
    nb = nbformat.read(lesson, as_version=4)
    last = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and WIDGET.search(c.source))
    nb.cells = nb.cells[:last + 1]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, root / lesson.name)
    return lesson.name


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root, settings = tmp_path_factory.mktemp("widget_root"), tmp_path_factory.mktemp("widget_settings")
    names = [widget_copy(lesson, root) for lesson in LESSONS]
    with jupyterlab(root, settings) as (base, token):
        yield dict(base=base, token=token, names=names)


def test_the_lessons_with_widgets_are_found():
    assert {p.stem[:2] for p in LESSONS} >= {"01", "02"}


PLOT = ("(() => { const s = document.querySelectorAll('.jp-Notebook .jp-Cell:last-child .widget-output img');"
        " return s.length ? s[s.length - 1].src : null; })()")


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem[:2] for p in LESSONS])
def test_moving_the_slider_changes_the_plot(lab, lesson):
    with chromium_context() as (context, outside, errors):
        page = open_notebook(context, lab["base"], lab["token"], lesson.name)
        page.evaluate("jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_selector(".jp-Notebook .jp-Cell:last-child .jupyter-widgets.widget-slider", timeout=240_000)
        page.wait_for_function(f"{PLOT} !== null", timeout=120_000)
        before = page.evaluate(PLOT)
        readout = page.locator(".jp-Notebook .jp-Cell:last-child .widget-readout").first
        value_before = readout.text_content()
        handle = page.locator(".jp-Notebook .jp-Cell:last-child .noUi-handle").first
        handle.focus()
        for _ in range(5):
            handle.press("ArrowRight")
        page.wait_for_function(f"{PLOT} !== null && {PLOT} !== {json.dumps(before)}", timeout=60_000)
        value_after = readout.text_content()
        outputs = page.evaluate("jupyterapp.shell.currentWidget.content.model.cells.get("
                                "jupyterapp.shell.currentWidget.content.model.cells.length - 1).outputs.toJSON()")
    assert value_after != value_before, (value_before, value_after)
    assert not [o for o in outputs if o.get("output_type") == "error"], outputs
    assert outside == [], f"JupyterLab tried to reach the network: {outside}"
    print(f"\n{lesson.stem}: slider {value_before} -> {value_after}, plot changed")
