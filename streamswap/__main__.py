from streamswap.cli import main

main()
