from hivemind.cli import main

main()
