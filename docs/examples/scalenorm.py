"""ScaleNorm (Nguyen and Salazar, 2019, "Transformers without Tears"), declared for bnsym.

    y_i = g * x_i / sqrt(mean(x**2) + eps)

over the m features of one sample (a row of x), with one learned scale g shared by every
feature and no shift: RMS norm's statistic with a single gamma. None of bnsym's five layers
is this one (RMS norm has one gamma per feature), and nothing inside the package changes to
derive it, generate its code, check it and write it up:

    bnsym derive  --layer docs/examples/scalenorm.py:scalenorm --m 4
    bnsym codegen --layer docs/examples/scalenorm.py:scalenorm --m 4 --order 2
    bnsym check   --layer docs/examples/scalenorm.py:scalenorm --m 4 --order 2
"""

import bnsym

scalenorm = bnsym.Layer(
    name="scalenorm",
    title="ScaleNorm",
    centred=False,  # divide by the root mean square, as RMS norm does: no mean subtracted
    params="shared",  # one g for the whole group (and, in a rows layout, for every row)
    beta=False,  # no shift
    grouping="rows",  # x (N, m): each row is one group
    group="the m features of one sample, not centred, one g for all",
)
