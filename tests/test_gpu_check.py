"""tools/gpu_check.py (`make gpu-check`): refuses without a GPU, summarises a real nbval run into a report."""
import subprocess
import sys

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import gpu_check  # noqa: E402


def test_default_notebooks_are_the_gpu_relevant_lessons():
    names = [p.split("/")[-1][:2] for p in gpu_check.default_notebooks()]
    assert names and set(names) <= set(gpu_check.LESSONS) and "00" in names and "12" in names


def test_without_a_gpu_it_stops_with_a_message(monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "devices", lambda: {"torch_gpus": 0, "names": "", "tf_gpus": 0})
    assert gpu_check.main([]) == 2
    assert "sees no GPU" in capsys.readouterr().err


def test_report_from_a_real_nbval_run(tmp_path):
    junit = tmp_path / "junit.xml"
    nb = "labs/lab01_neuron_and_gradient_descent/starter.ipynb"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
                    f"--junitxml={junit}", nb], cwd=ROOT, capture_output=True, timeout=300)
    notebooks = gpu_check.summarise(junit)
    assert list(notebooks) == ["starter.ipynb"] and notebooks["starter.ipynb"]["cells"] > 3
    text = gpu_check.report({"torch_gpus": 1, "names": "Test GPU", "tf_gpus": 0}, notebooks, 1.0)
    assert "| starter.ipynb |" in text and "| ok |" in text and "Test GPU" in text
    notebooks["starter.ipynb"]["failed"].append("Cell 3: boom")
    assert "FAILED" in gpu_check.report({"torch_gpus": 1, "names": "", "tf_gpus": 0}, notebooks, 1.0)
