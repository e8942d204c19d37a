# The kvm probe guest (vws/pool/kvm_probe.py embeds its bytes; tests/test_kvm_probe.py checks
# they match):  as --64 -o p.o kvm_probe.S && ld -m elf_x86_64 -Ttext=0x100000 -e 0x100000 --oformat binary -o p.bin p.o
#
# A multiboot image QEMU's -kernel loads at 1 MiB and enters in 32-bit protected mode. It
# maps the first GiB, enters long mode, prints START on COM1, writes 16 MiB a byte at a time
# (what a kernel decompressor does first), prints DONE and halts.
    .set BASE, 0x100000
    .set STACK, 0x80000
    .set PML4, 0x10000
    .set PDPT, 0x11000
    .set PD, 0x12000
    .set WORK, 0x1000000
    .set WORK_BYTES, 0x1000000
    .set COM1, 0x3f8
    .text
    .code32
header:                                 # multiboot 1 with the a.out kludge: load the file at BASE
    .long 0x1BADB002
    .long 0x00010000
    .long -(0x1BADB002 + 0x00010000)
    .long BASE                          # header_addr
    .long BASE                          # load_addr
    .long 0                             # load_end_addr: the whole file
    .long 0                             # bss_end_addr
    .long BASE + (entry - header)       # entry_addr
entry:
    cli
    movl $STACK, %esp
    movl $PML4, %edi                    # clear the three page tables
    xorl %eax, %eax
    movl $(3 * 1024), %ecx
    rep stosl
    movl $(PDPT | 3), PML4
    movl $(PD | 3), PDPT
    movl $PD, %edi                      # 512 present, writable 2 MiB pages: the first GiB
    movl $0x83, %eax
map:
    movl %eax, (%edi)
    addl $0x200000, %eax
    addl $8, %edi
    cmpl $(PD + 0x1000), %edi
    jb map
    movl %cr4, %eax                     # PAE, the page tables, EFER.LME, paging: long mode
    orl $0x20, %eax
    movl %eax, %cr4
    movl $PML4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    lgdt BASE + (gdtr - header)
    ljmp $8, $(BASE + (long - header))
    .code64
long:
    leaq BASE + (started - header), %rsi
    call print
    movq $WORK, %rdi
    movq $WORK_BYTES, %rcx
work:
    movb %cl, (%rdi)
    incq %rdi
    decq %rcx
    jnz work
    leaq BASE + (finished - header), %rsi
    call print
halt:
    hlt
    jmp halt
print:                                  # the NUL-terminated string at %rsi, to COM1
    movw $COM1, %dx
next:
    lodsb
    testb %al, %al
    jz printed
    outb %al, %dx
    jmp next
printed:
    ret
    .p2align 3
gdt:
    .quad 0
    .quad 0x00209A0000000000            # the 64-bit code segment
gdtr:
    .word gdtr - gdt - 1
    .long BASE + (gdt - header)
started:
    .asciz "VWS-KVM-PROBE-START\n"
finished:
    .asciz "VWS-KVM-PROBE-DONE\n"
