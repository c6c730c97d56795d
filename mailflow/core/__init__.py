"""The pure domain: procedures, people, workflow, deadlines. Standard library only, no I/O."""
