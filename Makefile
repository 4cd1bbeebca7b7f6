.PHONY: setup demo test build
setup:
	bash scripts/setup.sh
build:
	npx tsc -p tsconfig.json
	node scripts/bundle.mjs
demo: setup
	bash scripts/demo.sh
test: setup
	node scripts/run-tests.mjs
