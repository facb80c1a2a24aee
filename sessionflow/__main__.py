from sessionflow.cli import main

main()
