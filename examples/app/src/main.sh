echo "running as $(id -un) in $(pwd)"
