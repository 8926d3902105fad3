# LLaVA-style multimodal fine-tuning (finetune.methods: llava): the data (synth_mm: pictures
# rendered from the language; llava: image-text datasets), the vision tower (trained once here
# and frozen, or a Hub CLIP), stage 1 (the projector, on captions) per checkpoint, stage 2
# (projector + language model) per run, and the image-conditioned evaluations. Text evaluations
# of the fine-tunes are rules/evaluate.smk's.
rule multimodal_data:
    input:
        unpack(multimodal_data_inputs),
    output:
        directory(f"{MM_DIR}/data/{{task}}"),
    log:
        f"{LOGS}/multimodal_data/{{task}}.log",
    benchmark:
        f"{BENCH}/multimodal_data/{{task}}.tsv"
    localrule: True
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=model_resources,
        runtime=10,
    params:
        online=True,
        code=code_version("../scripts/multimodal_data.py"),
        data={k: MM[k] for k in ("cells", "cell", "continuation", "noise", "seed", "n")},
        sources=MM.get("data"),
    script:
        "../scripts/multimodal_data.py"


if MM["vision"].get("source", "trained") == "trained":

    rule vision_encoder:
        input:
            language=CORPUS["language"],
        output:
            directory(f"{MM_DIR}/vision"),
        log:
            f"{LOGS}/vision_encoder.log",
        benchmark:
            f"{BENCH}/vision_encoder.tsv"
        conda:
            "../envs/torch.yaml"
        threads: THREADS
        resources:
            mem_mb=model_resources,
            runtime=model_runtime,
        params:
            **MODEL_JOB_PARAMS,
            code=code_version("../scripts/vision_encoder.py"),
            vision=MM["vision"],
            images={k: MM[k] for k in ("cells", "cell", "noise", "seed")},
        script:
            "../scripts/vision_encoder.py"

else:

    # a download: where Snakemake runs (on SLURM the submit node, which has the network)
    rule hub_vision:
        output:
            directory(f"{MM_DIR}/vision"),
        log:
            f"{LOGS}/hub_vision.log",
        localrule: True
        conda:
            "../envs/torch.yaml"
        params:
            online=True,
            code=code_version("../scripts/hub_vision.py"),
            vision=MM["vision"],
        script:
            "../scripts/hub_vision.py"


LLAVA_INPUTS = {
    "checkpoint": CHECKPOINT,
    "vision": f"{MM_DIR}/vision",
    "data": f"{MM_DIR}/data/{{task}}",
}


rule align_projector:
    input:
        **LLAVA_INPUTS,
    output:
        directory(f"{MM_DIR}/projector/{{model}}/{{ckpt}}/{{task}}"),
    log:
        f"{LOGS}/align_projector/{{model}}/{{ckpt}}/{{task}}.log",
    benchmark:
        f"{BENCH}/align_projector/{{model}}/{{ckpt}}/{{task}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
        gpu=GPUS,
    params:
        **MODEL_JOB_PARAMS,
        code=code_version("../scripts/llava.py"),
        stage=MM["stage1"],
        llava={k: MM[k] for k in ("feature_layer", "select")},
        max_len=train_max_length,
        trust_remote_code=trust_remote_code,
    script:
        "../scripts/llava.py"


rule finetune_llava:
    input:
        **LLAVA_INPUTS,
        projector=f"{MM_DIR}/projector/{{model}}/{{ckpt}}/{{task}}",
    output:
        directory(FINETUNED),
    log:
        f"{LOGS}/finetune/{{model}}/{{ckpt}}/{{task}}/{{run}}.log",
    benchmark:
        f"{BENCH}/finetune/{{model}}/{{ckpt}}/{{task}}/{{run}}.tsv"
    wildcard_constraints:
        run=ids.unnamed(ids.RUN_PATTERN, ("llava",)),
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
        gpu=GPUS,
    params:
        **MODEL_JOB_PARAMS,
        code=code_version("../scripts/llava.py"),
        finetune={
            k: v for k, v in config["finetune"].items() if k not in FINETUNE_NON_PARAMS
        },
        llava={k: MM[k] for k in ("feature_layer", "select")},
        max_len=train_max_length,
        trust_remote_code=trust_remote_code,
    script:
        "../scripts/llava.py"


rule evaluate_multimodal:
    input:
        **LLAVA_INPUTS,
        finetuned=FINETUNED,
    output:
        f"{R}/evals/{{model}}/{{ckpt}}/mm-{{task}}-{{run}}.json",
    log:
        f"{LOGS}/evaluate/{{model}}/{{ckpt}}/mm-{{task}}-{{run}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{ckpt}}/mm-{{task}}-{{run}}.tsv"
    wildcard_constraints:
        run=ids.unnamed(ids.RUN_PATTERN, ("llava",)),
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
        gpu=GPUS,
    params:
        **MODEL_JOB_PARAMS,
        code=code_version("../scripts/evaluate_multimodal.py"),
        limit=config["evaluate"]["limit"],
        batch_size=MM["batch_size"],
        max_len=train_max_length,
        trust_remote_code=trust_remote_code,
        benchmarks=MM["benchmarks"],
        benchmark_include=MM["benchmark_include"],
    script:
        "../scripts/evaluate_multimodal.py"
