"""Stand-ins for what a dependency imports but this project does not install."""
