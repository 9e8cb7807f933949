from qsopipe.pipeline.cli import main

main()
