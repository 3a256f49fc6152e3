"""The enforcement worker: ``loop`` drains the job queue, ``executor`` runs each step through the switch drivers."""
