"""The application shell: the `minqing` command, the runner, the gateway, the exporter, the development
stack and the simulator. It wires the kernel (the rest of `minqing`) and the services together; nothing
outside it imports it."""
