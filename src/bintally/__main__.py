from bintally.cli import main

main()
