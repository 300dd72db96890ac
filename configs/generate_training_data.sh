#!/usr/bin/env bash
# Generate training data over a dataset: the original generate_training_data.sh's role.
# Edit the variables below (or override any of them from the environment), then:
#     bash configs/generate_training_data.sh
# The API key is read from the environment (OPENAI_API_KEY), never written here or to any output.
# Re-running with RESUME=1 continues an interrupted run (same OUTPUT); watch it live from another
# terminal with: agentdata-tui watch "$OUTPUT"
set -euo pipefail

DATASET="${DATASET:-/path/to/dataset.json}"          # JSON array, {"instances": [...]} or JSONL
MODEL="${MODEL:-Qwen/Qwen3-8B}"                       # empty: the one model the server lists
BASE_URL="${BASE_URL:-${OPENAI_BASE_URL:-http://localhost:8000/v1}}"
API_KEY="${OPENAI_API_KEY:-}"                          # from the environment only
DOCKER_SERVER="${DOCKER_SERVER:-}"                    # e.g. 10.67.77.184:9527 (HOST:PORT[,HOST:PORT...]); empty: per CONFIG
EVAL_SERVER="${EVAL_SERVER:-local}"                   # e.g. 10.67.77.184:9528, or local (built-in evaluator)
OUTPUT="${OUTPUT:-./training_data.json}"              # the run folder is OUTPUT with .run instead of .json
CONFIG="${CONFIG:-}"                                   # empty: the bundled mini.yaml
WORKERS="${WORKERS:-4}"
TEMPERATURE="${TEMPERATURE:-1.0}"
MAX_TOKENS="${MAX_TOKENS:-8000}"
SAMPLES_PER_TASK="${SAMPLES_PER_TASK:-1}"
MAX_TASKS="${MAX_TASKS:-}"                            # empty: every task
RETRY_ERRORS="${RETRY_ERRORS:-1}"
RESUME="${RESUME:-0}"                                 # 1: continue the run in OUTPUT's run folder
LOG_FILE="${LOG_FILE:-${OUTPUT%.json}.log}"

args=(
    --dataset "$DATASET"
    --base-url "$BASE_URL"
    --eval-server "$EVAL_SERVER"
    --output "$OUTPUT"
    --workers "$WORKERS"
    --temperature "$TEMPERATURE"
    --max-tokens "$MAX_TOKENS"
    --samples-per-task "$SAMPLES_PER_TASK"
    --retry-errors "$RETRY_ERRORS"
    --log-file "$LOG_FILE"
)
[ -n "$MODEL" ] && args+=(--model "$MODEL")
[ -n "$DOCKER_SERVER" ] && args+=(--docker-server "$DOCKER_SERVER")
[ -n "$CONFIG" ] && args+=(--config "$CONFIG")
[ -n "$MAX_TASKS" ] && args+=(--max-tasks "$MAX_TASKS")
[ "$RESUME" = "1" ] && args+=(--resume)

# The key travels by environment, so it never shows in `ps` output.
export OPENAI_API_KEY="$API_KEY"
exec agentdata-tui generate-multi "${args[@]}"
