from dj_ops_cogvlm2_server.server import main

main()
