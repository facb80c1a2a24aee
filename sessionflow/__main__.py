from sessionflow.cli.commands import main

main()
