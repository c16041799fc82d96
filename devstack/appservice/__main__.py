from devstack.appservice.server import main

main()
