from tepui.cli.main import main

main()
