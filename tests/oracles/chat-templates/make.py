# Renders chat templates with transformers' apply_chat_template (add_generation_prompt=True,
# one user turn) on the bundled world's tokenizer: the oracle for src/data/chat.rs.
import json, sys, transformers
from transformers import PreTrainedTokenizerFast
TOK = sys.argv[1]
templates = {
 "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
 "chatml": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
 "mistral": "{{ bos_token }}{% for message in messages %}\n    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\n    {% endif %}\n    {% if message['role'] == 'user' %}\n        {{ '[INST] ' + message['content'].strip() + ' [/INST]' }}\n    {% elif message['role'] == 'assistant' %}\n        {{ message['content'] + eos_token }}\n    {% endif %}\n{% endfor %}\n",
 "zephyr": "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
}
# Made by: python make.py fixtures/world/tokenizer.json (from the repository root, paths adjusted)
prompts = ["  What is the phone number of Ada Quill? ", "Where was Bo Lind born?\n"]
out = {"transformers": transformers.__version__, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "cases": []}
for name, t in templates.items():
    tok = PreTrainedTokenizerFast(tokenizer_file=TOK, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    tok.chat_template = t
    for p in prompts:
        msgs = [{"role": "user", "content": p}]
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"): ids = ids["input_ids"]
        out["cases"].append({"template": name, "source": t, "prompt": p, "text": text, "ids": list(ids)})
json.dump(out, open("expected.json", "w"), indent=1, ensure_ascii=False)
print(json.dumps(out["cases"][4]["text"]), json.dumps(out["cases"][0]["text"]))
