# agledger/agledger:<version> — the AGLedger stand-in (test equipment, see
# ../README.md). FROM scratch: a static musl binary, a version file and, for
# the image that models a broken release, /etc/agledger/broken.
# The build context is prepared by build-images.sh.
FROM scratch
COPY agledger /agledger
COPY etc/ /etc/
HEALTHCHECK --interval=1s --timeout=2s --retries=3 CMD ["/agledger", "healthcheck"]
ENTRYPOINT ["/agledger"]
CMD ["serve"]
