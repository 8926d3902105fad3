# AlpacaEval-style win rates (evaluate.judge): the prompt set and reference responses once per
# study, then each variant's generations and their judgments, cached separately (a new judge
# re-judges without regenerating).


rule judge_model:
    output:
        directory(f"{R}/judge/models/{{role}}"),
    log:
        f"{LOGS}/judge/model_{{role}}.log",
    benchmark:
        f"{BENCH}/judge/model_{{role}}.tsv"
    wildcard_constraints:
        role="reference|judge",
    localrule: True
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=model_runtime,
    params:
        online=True,
        code=code_version("../scripts/judge_model.py"),
        source=lambda w: JUDGE[w.role if w.role == "reference" else "model"],
    script:
        "../scripts/judge_model.py"


rule judge_reference:
    input:
        unpack(judge_reference_inputs),
    output:
        f"{R}/judge/reference.json",
    log:
        f"{LOGS}/judge/reference.log",
    benchmark:
        f"{BENCH}/judge/reference.tsv"
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
        gpu=GPUS,
    params:
        **MODEL_JOB_PARAMS,
        code=code_version("../scripts/judge_reference.py"),
        prompts=JUDGE.get("prompts"),
        n_prompts=JUDGE.get("n_prompts"),
        reference=JUDGE.get("reference"),
        max_new_tokens=JUDGE.get("max_new_tokens"),
        batch_size=JUDGE.get("batch_size"),
    script:
        "../scripts/judge_reference.py"


rule generate:
    input:
        unpack(generate_inputs),
        reference=f"{R}/judge/reference.json",
        checkpoint=CHECKPOINT,
    output:
        f"{R}/generations/{{model}}/{{ckpt}}/{{variant}}.json",
    log:
        f"{LOGS}/generate/{{model}}/{{ckpt}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/generate/{{model}}/{{ckpt}}/{{variant}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
        gpu=GPUS,
    params:
        **MODEL_JOB_PARAMS,
        code=code_version("../scripts/generate.py"),
        max_new_tokens=JUDGE.get("max_new_tokens"),
        batch_size=JUDGE.get("batch_size"),
        trust_remote_code=trust_remote_code,
    script:
        "../scripts/generate.py"


rule judge:
    input:
        generations=f"{R}/generations/{{model}}/{{ckpt}}/{{variant}}.json",
        reference=f"{R}/judge/reference.json",
        judge=f"{R}/judge/models/judge",
        checkpoint=CHECKPOINT,
    output:
        f"{R}/judgments/{{model}}/{{ckpt}}/{{variant}}.json",
    log:
        f"{LOGS}/judge/{{model}}/{{ckpt}}/{{variant}}.log",
    benchmark:
        f"{BENCH}/judge/{{model}}/{{ckpt}}/{{variant}}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: THREADS
    resources:
        mem_mb=model_resources,
        runtime=model_runtime,
        gpu=GPUS,
    params:
        **MODEL_JOB_PARAMS,
        code=code_version("../scripts/judge.py"),
        kind=JUDGE.get("kind"),
    script:
        "../scripts/judge.py"
