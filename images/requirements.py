"""Print the project's requirements (and those of the extras named as arguments), one a line.

The image build installs them in a layer of their own, so a change to the sources alone does not
download the dependencies again.
"""

import sys
import tomllib

with open("pyproject.toml", "rb") as file:
    project = tomllib.load(file)["project"]
extras = project.get("optional-dependencies", {})
print("\n".join([*project["dependencies"], *(r for name in sys.argv[1:] for r in extras[name])]))
