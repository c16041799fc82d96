from devstack.servicebus.server import main

main()
