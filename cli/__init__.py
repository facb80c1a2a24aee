"""The top floor: the `sessionflow` command, the local development stack, the demo and
the terminal chat. Nothing below imports this package."""
