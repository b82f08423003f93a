# Checks the sbatch recipes of configs/slurm/ run before they start any task (sourced, not run).
# A mistake ends the job at once with one line in its output file:
#   <recipe>: error: <what is wrong and the fix>

# check_job RECIPE PROGRAM CONFIG [PROGRAM ARGS...]
# RECIPE names the script in the messages; PROGRAM (train.py, search.py) must be in the working directory and CONFIG must be a file; a
# --trainer.devices or --trainer.num_nodes among the arguments must match the allocation (one
# task per device: Lightning refuses the mismatch only once every task has started).
check_job() {
    local recipe=$1 program=$2 config=$3
    shift 3
    _job_error() {
        echo "$recipe: error: $*" >&2
        exit 2
    }
    [[ -f $program ]] || _job_error "no $program in $PWD; submit from the repository root"
    [[ -f $config ]] || _job_error "config file '$config' does not exist (CONFIG=...; relative to $PWD)"
    local -a args=("$@")
    local i key value
    for ((i = 0; i < ${#args[@]}; i++)); do
        case ${args[i]} in
            --trainer.devices=* | --trainer.num_nodes=*) key=${args[i]%%=*}; value=${args[i]#*=} ;;
            --trainer.devices | --trainer.num_nodes) key=${args[i]}; value=${args[i + 1]:-} ;;
            *) continue ;;
        esac
        if [[ $key == --trainer.devices && $value != "${SLURM_NTASKS_PER_NODE:-}" ]]; then
            _job_error "--trainer.devices $value does not match the $SLURM_NTASKS_PER_NODE tasks per node" \
                "of this job (one task per device); drop it, or submit with --ntasks-per-node=$value"
        fi
        if [[ $key == --trainer.num_nodes && $value != "${SLURM_JOB_NUM_NODES:-}" ]]; then
            _job_error "--trainer.num_nodes $value does not match the $SLURM_JOB_NUM_NODES nodes of" \
                "this job; drop it, or submit with --nodes=$value"
        fi
    done
}
