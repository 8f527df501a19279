# Sourced by ktrail and the deploy/local scripts (after they set ROOT): the Node that
# deploy/local/node.sh installs comes first on PATH, so these scripts and every child (npm,
# npx, node-gyp, vitest, up's processes) run it and never the machine's own node.
KTRAIL_NODE_HOME="$ROOT/.cache/node"
export PATH="$KTRAIL_NODE_HOME/bin:$PATH"
