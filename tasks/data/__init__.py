"""Data apart from workloads: loaders per data kind, shared by the tasks that train on that data.

  images   CIFAR-10/100 (torchvision), scikit-learn's digits, synthetic images; long-tailed subsets;
           crop + flip on the device; top-1 scoring
  text     raw text corpora (CPython's pydoc prose, ``path:`` files, HF datasets: WikiText, the
           multilingual NLI corpus, any ``hf:`` set); character / word vocabularies; the batchify
           stream of truncated-BPTT language models
  tokens   token corpora for decoder language models: offline (pydoc, ``path:``) and streamed hub
           corpora (FineWeb-Edu, C4); locate / load. ``tokenizing``: tokenizers (bytes, ``tokenizers``
           files, hub ids), tokenising, packed rows. ``token_streams``: held-out rows and the
           device-side streams (in memory, streamed), sharded by rank
  graphs   GraphLand and the heterophilous graphs (PyG), the synthetic stochastic block model;
           downloads, splits, locate / load. ``graph_tensors``: the graph record, the SBM sampler,
           full-batch graph data on the device, objective and node metrics
  tables   OpenML (scikit-learn's cache), scikit-learn's bundled sets, ``path:`` CSV / parquet;
           locate / load. ``table_prep``: the preprocessing of the tabular-DL literature.
           ``table_batches``: row batches on the device, the loss, evaluation

Each data kind's main module (images, text, tokens, graphs, tables) declares its ``DATASETS``
(``harness.task.Dataset`` records) and a ``locate`` / ``load`` pair that a task's ``TaskSpec`` can use as
they are. Heavy libraries (torchvision, torch_geometric, datasets, tokenizers, scikit-learn, pandas) are
imported inside the functions that need them.
"""
