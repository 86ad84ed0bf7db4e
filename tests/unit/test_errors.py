from cargohold.errors import TABLE, Kind, RegistryError


def test_every_kind_has_a_row() -> None:
    assert set(TABLE) == set(Kind)


def test_rows_are_well_formed() -> None:
    for kind, row in TABLE.items():
        assert 400 <= row.oci_status < 600, kind
        assert 400 <= row.ecr_status < 600, kind
        assert row.ecr_exception.endswith("Exception"), kind
        assert row.oci_code.isupper(), kind


def test_default_message_comes_from_the_table() -> None:
    err = RegistryError(Kind.BLOB_UNKNOWN)
    assert err.message == "blob unknown to registry"
    assert err.row.oci_status == 404
