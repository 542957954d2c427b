"""The application shell: the `minqing` command, the runner, the gateway, the exporter, the development
stack and the simulator. It wires the kernel (the rest of `minqing`) and the services together; neither
the kernel nor a service imports it (the console, a front end over HTTP like the gateway, reads the
gateway's route table). tests/unit/test_layering.py checks it."""
