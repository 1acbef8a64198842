raise RuntimeError("the script's own two_layer_net.py was imported; xpnet must serve its own")
