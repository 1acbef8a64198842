# load_params of a file the book's pickle wrote: xpnet refuses it with one clear line.
import sys, os
sys.path.append(os.pardir)
from deep_convnet import DeepConvNet

network = DeepConvNet()
network.load_params("book_params.pkl")
print("loaded")
