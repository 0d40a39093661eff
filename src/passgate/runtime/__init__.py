"""The processes: the ``passgate`` command, the server with its workers and their HTTP
protocol, and the side processes (spend writer, limits) with their launchers."""
