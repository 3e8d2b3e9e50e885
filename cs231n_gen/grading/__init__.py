"""Release student copies of the lectures and grade submissions (``cs231n-gen release|grade|check``).

- :mod:`.notebooks`: cell kinds, exercises, solution regions, digests;
- :mod:`.release`: student copies and ``release.json`` (:func:`.release.release`);
- :mod:`.screen`: static reading of exercise cells for tampering;
- :mod:`.kernel`: the grader's side inside the kernel (seal, run_check); imports nothing else
  from this package, so that a graded kernel loads only what it needs;
- :mod:`.grade`: building, running (contained) and judging submissions; the gradebook
  (:func:`.grade.grade`).
"""
