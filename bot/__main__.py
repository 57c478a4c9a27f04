from modelherd.cli import main

main()
