from qsopipe.cli import main

main()
