"""A service process freezes what its start-up built (minqing.shell.service_main.settle_heap), so a
full garbage collection no longer walks those objects in the middle of a request or a sweep.

Run in a subprocess: importing service_main monkey-patches the standard library with eventlet."""
import subprocess
import sys

CODE = """
import gc, weakref
from minqing.shell import service_main
from minqing.shell.registry import service_class
for name in ('intake', 'routing', 'assessment', 'notify'):
    service_class(name)                      # what a service's start-up imports
frozen = service_main.settle_heap()

class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a                      # a cycle made after the freeze
gone = weakref.ref(a)
del a, b
gc.collect()
print(frozen, gone() is None)
"""


def test_settle_heap_freezes_start_up_and_later_cycles_are_still_collected():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    frozen, collected = done.stdout.split()
    assert int(frozen) > 20_000, "start-up's objects were not frozen"
    assert collected == "True", "a cycle made after the freeze was not collected"
