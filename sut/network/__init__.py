"""LoadGen over the network: one LoadGen node driving SUT nodes on other hosts.

A SUT node (``run.py serve``, :mod:`sut.network.node`) owns a backend and its
own preprocessed copy of the dataset and answers batches of sample indices
with response rows; it never imports LoadGen. The LoadGen node
(``run.py --nodes HOST:PORT,...``, :mod:`sut.network.run`) runs LoadGen with
its query dispatch library (``ConstructQDL``) and spreads queries over the
nodes (:mod:`sut.network.dispatch`). The wire format is in
:mod:`sut.network.protocol`, the shared secret in :mod:`sut.network.auth`.

This package's ``__init__`` imports nothing, so ``sut.cli`` can import its
entry point cheaply.
"""
