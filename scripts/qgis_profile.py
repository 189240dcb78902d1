"""Enable the plugin in a repo-local QGIS profile (idempotent).

qgis_process and QGIS desktop only load enabled plugins; `qgis_process plugins enable` exits 1 when the
plugin is already enabled, so the setting is written directly. QGIS3.ini is a QSettings file: the edit
is line-based so that anything QGIS wrote there is left as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

PLUGIN = "clay_qgis"


def enable_plugin(config_root: Path, plugin: str = PLUGIN) -> Path:
    ini = config_root / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    lines = ini.read_text(encoding="utf-8").splitlines() if ini.exists() else []
    wanted = f"{plugin}=true"
    if "[PythonPlugins]" not in lines:
        lines += ["", "[PythonPlugins]", wanted]
    else:
        start = lines.index("[PythonPlugins]") + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
        section = [i for i in range(start, end) if lines[i].split("=", 1)[0] == plugin]
        if section:
            lines[section[0]] = wanted
        else:
            lines.insert(start, wanted)
    text = "\n".join(lines).lstrip("\n") + "\n"
    if not ini.exists() or ini.read_text(encoding="utf-8") != text:
        ini.write_text(text, encoding="utf-8")
    return ini


if __name__ == "__main__":
    print(enable_plugin(Path(sys.argv[1])))
