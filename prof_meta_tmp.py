import time, torch, cProfile, pstats
from benchmarks.common import cached, shared_data_dir
from benchmarks.sib_fewshot import minilm, new_model
from benchmarks.meta_speed import sib_training
from hf_adapter_ext.data import load_clinc150
from hf_adapter_ext.meta import EpisodeSampler, SequenceEpisodes, encode_texts
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(minilm())
pool, split = load_clinc150(shared_data_dir() / "clinc150")
names = pool.features["label"].names
train_classes = [names.index(c) for c in split["train"]]
features = cached("clinc150_minilm", lambda: None)
sampler = EpisodeSampler(pool["label"], train_classes, 5, 1, 15, seed=0)
episodes = SequenceEpisodes(features, sampler, 10**6)
torch.manual_seed(0)
model = new_model("sequence", inner_steps=3)
print(model.config)
step = sib_training(model, episodes, 32)
for _ in range(5): step()
t = time.perf_counter(); n = 0
while time.perf_counter() - t < 3: n += step()
print("eps/s", n / (time.perf_counter() - t))
cProfile.run("for _ in range(30): step()", "/tmp/prof.out")
pstats.Stats("/tmp/prof.out").sort_stats("cumulative").print_stats(35)
