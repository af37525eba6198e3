# Turn a file into a C array: cmake -DIN=file -DOUT=file.h -DNAME=symbol -P embed.cmake
file(READ ${IN} content HEX)
string(LENGTH "${content}" hex_len)
math(EXPR size "${hex_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n\t" bytes "${bytes}")
file(WRITE ${OUT} "/* Generated from ${IN}; do not edit. */\n"
	"#include <stddef.h>\n"
	"const unsigned char ${NAME}[] = {\n\t${bytes}0x00\n};\n"
	"const size_t ${NAME}_len = ${size};\n")
