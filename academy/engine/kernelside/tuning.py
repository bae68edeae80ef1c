# Run in a kernel before IPython starts (and in a kernel zygote before it forks): the programs of
# academy.engine.sandbox.launch and .zygote call ``tune_kernel(CANARY_MESSAGE)``.  Tracebacks were the
# largest single cost of a grading kernel (every test runs a canary that fails on purpose), so:
# - IPython 9 formats the traceback of every failed cell twice: once to show it, once more (as costly:
#   stack_data, pygments) to keep it for its ``%notebook`` export.  A grading kernel keeps the standard
#   library's plain text there instead: what the cell shows, and so the graded notebook and the feedback,
#   is unchanged.
# - The canary's own failure (``assert False, "<nonce>"``, see academy.engine.anticheat.canary) is
#   formatted as plain text: the grader reads only its exception's name and message and drops its outputs,
#   and IPython's verbose formatting cost 15 ms per canary.  ``canary_message`` is the nonce's form; any
#   other exception keeps IPython's formatting, so what a cell shows is unchanged.


def tune_kernel(canary_message):
    def _academy_plain_exception_record(self, exception, filename=None, running_compiled_code=False):
        import traceback
        lines = traceback.format_exception(type(exception), exception, exception.__traceback__)
        return {"ename": type(exception).__name__, "evalue": str(exception), "traceback": lines}
    from IPython.core.interactiveshell import InteractiveShell as _academy_shell
    if hasattr(_academy_shell, "_format_exception_for_storage"):
        _academy_shell._format_exception_for_storage = _academy_plain_exception_record

    def _academy_canary_plain(original):
        import re
        import traceback
        canary = re.compile(canary_message)

        def structured_traceback(self, etype, evalue=None, etb=None, *args, **kwargs):
            if (etype is AssertionError and type(evalue) is AssertionError and len(evalue.args) == 1
                    and type(evalue.args[0]) is str and canary.fullmatch(evalue.args[0])):
                return traceback.format_exception_only(etype, evalue)
            return original(self, etype, evalue, etb, *args, **kwargs)
        return structured_traceback
    from IPython.core import ultratb as _academy_ultratb
    if hasattr(getattr(_academy_ultratb, "AutoFormattedTB", None), "structured_traceback"):
        _academy_ultratb.AutoFormattedTB.structured_traceback = _academy_canary_plain(
            _academy_ultratb.AutoFormattedTB.structured_traceback)
